"""bird_jax.data.prepare for TFDS datasets: instructions instead of network retries, manual files.

Nothing here downloads or builds a TFDS dataset: the reachability check and the build are
replaced. The folder route is tested in tests/test_folder_source.py.
"""

import pytest
import tensorflow_datasets as tfds

from bird_jax.data import net, prepare


@pytest.fixture
def no_build(monkeypatch):
    """Records download_and_prepare calls instead of running them."""
    calls = []

    def download_and_prepare(builder, download_config=None, **kwargs):
        calls.append((builder.name, download_config.manual_dir))

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", download_and_prepare)
    return calls


def test_offline_lists_what_to_download_where_and_the_command(
    tmp_path, monkeypatch, capsys, no_build
):
    checked = []
    monkeypatch.setattr(net, "host_reachable", lambda url: checked.append(url) or False)
    monkeypatch.setattr(prepare, "_tensorflow_installed", lambda: True)
    assert prepare.prepare_tfds("cifar10", str(tmp_path), None) == 1
    message = capsys.readouterr().err
    manual_dir = tmp_path / "downloads" / "manual"
    assert checked == ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]
    assert "cannot reach www.cs.toronto.edu" in message
    assert "cifar-10-binary.tar.gz (162.17 MiB): https://www.cs.toronto.edu/" in message
    assert f"in {manual_dir}" in message
    assert f"python -m bird_jax.data.prepare --dataset=cifar10 --data_dir={tmp_path}" in message
    assert "needs TensorFlow" not in message
    assert not no_build and not any(tmp_path.iterdir())  # Nothing downloaded or written.


def test_files_in_the_manual_dir_need_no_network(tmp_path, monkeypatch, capsys, no_build):
    manual_dir = tmp_path / "by_hand"
    manual_dir.mkdir()
    for name in prepare.DOWNLOADS["caltech_birds2011"]:
        (manual_dir / name).write_bytes(b"archive")
    monkeypatch.setattr(net, "host_reachable", lambda url: pytest.fail("network touched"))
    monkeypatch.setattr(prepare, "_tensorflow_installed", lambda: False)
    assert prepare.prepare_tfds("caltech_birds2011", str(tmp_path), str(manual_dir)) == 1
    message = capsys.readouterr().err
    assert "needs TensorFlow" in message and "pip install tensorflow-cpu" in message
    assert "cannot reach" not in message and "only you can download" not in message

    monkeypatch.setattr(prepare, "_tensorflow_installed", lambda: True)
    assert prepare.prepare_tfds("caltech_birds2011", str(tmp_path), str(manual_dir)) == 0
    assert no_build == [("caltech_birds2011", str(manual_dir))]


def test_imagenet_asks_for_its_manual_files(tmp_path, monkeypatch, capsys, no_build):
    monkeypatch.setattr(net, "host_reachable", lambda url: pytest.fail("network touched"))
    assert prepare.prepare_tfds("imagenet2012", str(tmp_path), str(tmp_path / "in")) == 1
    message = capsys.readouterr().err
    assert "https://image-net.org/download-images" in message
    assert "ILSVRC2012_img_train.tar (137.74 GiB), ILSVRC2012_img_val.tar" in message
    assert f"Put them in {tmp_path / 'in'}" in message
    assert not no_build


def test_unknown_dataset_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="--dataset must be one of"):
        prepare.prepare_tfds("mnist", str(tmp_path), None)
