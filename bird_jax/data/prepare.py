"""Prepares a dataset once as TFDS array_record files, which Grain reads with random access.

  python -m bird_jax.data.prepare --dataset=caltech_birds2011 --data_dir=/data/tfds
  python -m bird_jax.data.prepare --dataset=imagenet2012 --data_dir=/data/tfds \
      --manual_dir=/data/imagenet     # holds ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar
  python -m bird_jax.data.prepare --dataset=folder --root=/data/birds525 --name=birds525 \
      --data_dir=/data/tfds           # any class-per-folder tree, or Kaggle BIRDS 525

then train with --config.data.source=tfds --config.data.name=NAME --config.data.data_dir=DIR.

TFDS datasets (DOWNLOADS, MANUAL_FILES) are prepared by TFDS's own builders, which need TensorFlow
for this one step (`pip install tensorflow-cpu`); reading them does not. Before anything is
downloaded, the download hosts are checked with a short timeout: offline, it lists the files to
fetch by hand and where to put them, and exits 1 (TFDS itself would retry for minutes). The folder
route needs no TensorFlow. A dataset that is prepared already is left alone (exit 0).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import urllib.parse

from absl import app, flags

from bird_jax import cli
from bird_jax.data import kaggle, net

# Files each TFDS builder downloads, named as TFDS looks for them in its manual_dir.
DOWNLOADS = {
    "caltech_birds2011": ("CUB_200_2011.tgz", "segmentations.tgz"),
    "stanford_dogs": ("images.tar", "lists.tar", "annotation.tar"),
    "cifar10": ("cifar-10-binary.tar.gz",),
    "cifar100": ("cifar-100-binary.tar.gz",),
    "imagenette": ("imagenette2.tgz",),  # Config full-size-v2.
    "imagenette/320px-v2": ("imagenette2-320.tgz",),
    "imagenette/160px-v2": ("imagenette2-160.tgz",),
}
# Files only the user can download (after registering), and where.
MANUAL_FILES = {
    "imagenet2012": (
        ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"),
        "https://image-net.org/download-images (free registration)",
    ),
}
DATASETS = (*DOWNLOADS, *MANUAL_FILES, "folder")


def _prepared(name: str, data_dir: str | None):
    """The builder of `name` in data_dir if it is prepared there, else None."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        return None
    return builder if builder.is_prepared() else None


def _report_prepared(builder, verb: str) -> None:
    splits = {name: split.num_examples for name, split in builder.info.splits.items()}
    name, _ = builder.info.full_name.rsplit("/", 1)  # Drops the version.
    data_dir = str(builder.data_dir)[: -len(builder.info.full_name) - 1]
    print(
        f"{builder.name} is {verb} in {builder.data_dir} as {builder.info.file_format.value}, "
        f"splits {splits}. Train on it with\n"
        f"  --config.data.source=tfds --config.data.name={name} --config.data.data_dir={data_dir}\n"
        f"and --config.data.eval_split set to one of its splits, or carve one from train with "
        f"--config.data.valid_from_train=0.1."
    )


def _file_sources(builder, file_name: str) -> tuple[list[str], str]:
    """The URLs TFDS knows for `file_name`, and its size."""
    matches = {
        url: info
        for url, info in (builder.url_infos or {}).items()
        if file_name in (info.filename, urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    }
    size = next((f"{info.size}" for info in matches.values()), "size unknown")
    return sorted(matches), size


def _tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _problems(dataset: str, builder, manual_dir: str) -> list[str]:
    """What stops TFDS's builder here: missing downloads, offline hosts, no TensorFlow."""
    problems = []
    files, where = MANUAL_FILES.get(dataset, (DOWNLOADS.get(dataset, ()), None))
    missing = [name for name in files if not os.path.isfile(os.path.join(manual_dir, name))]
    sources = {name: _file_sources(builder, name) for name in missing}
    if where and missing:
        listed = ", ".join(f"{name} ({sources[name][1]})" for name in missing)
        problems.append(
            f"{dataset} needs files only you can download, from {where}:\n"
            f"      {listed}\n    Put them in {manual_dir} (or pass --manual_dir)."
        )
    elif missing:
        hosts = {
            urllib.parse.urlsplit(url).hostname: url for name in missing for url in sources[name][0]
        }
        offline = sorted(host for host, url in hosts.items() if not net.host_reachable(url))
        if offline:
            listed = "".join(
                f"\n      {name} ({size}): {' or '.join(urls)}"
                for name, (urls, size) in sources.items()
            )
            problems.append(
                f"this machine cannot reach {', '.join(offline)} to download:{listed}\n"
                f"    Download them elsewhere and put them, named exactly so, in {manual_dir} "
                f"(or pass --manual_dir)."
            )
    if not _tensorflow_installed():
        problems.append(
            f"TFDS's {dataset} builder needs TensorFlow to prepare (reading needs none): "
            f"pip install tensorflow-cpu, or run `tfds build {dataset} --file_format=array_record "
            f"--data_dir=... --manual_dir=...` wherever TensorFlow is installed"
        )
    return problems


def prepare_tfds(dataset: str, data_dir: str | None, manual_dir: str | None) -> int:
    """Downloads and prepares TFDS dataset `dataset` as array_record; 1 with instructions if it
    cannot be done here, 0 when done or prepared already."""
    import tensorflow_datasets as tfds

    if dataset not in DOWNLOADS and dataset not in MANUAL_FILES:
        raise ValueError(f"--dataset must be one of {DATASETS}, got {dataset!r}.")
    builder = _prepared(dataset, data_dir)
    if builder:
        _report_prepared(builder, "prepared already")
        return 0
    builder = tfds.builder(dataset, data_dir=data_dir, file_format="array_record")
    manual_dir = manual_dir or os.path.join(builder.data_dir_root, "downloads", "manual")
    problems = _problems(dataset, builder, manual_dir)
    if problems:
        command = (
            f"python -m bird_jax.data.prepare --dataset={dataset} "
            f"--data_dir={builder.data_dir_root} --manual_dir={manual_dir}"
        )
        print(
            f"{dataset} cannot be prepared here yet:\n"
            + "".join(f"  - {problem}\n" for problem in problems)
            + f"Then run again:\n  {command}\n"
            f"(Or prepare it on a machine with network and TensorFlow, and copy "
            f"{builder.data_dir} to the same place here.)",
            file=sys.stderr,
        )
        return 1
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    builder.download_and_prepare(download_config=download_config)
    _report_prepared(builder, "prepared")
    return 0


def prepare_folder(root: str, name: str, data_dir: str | None, kaggle_handle: str = "") -> int:
    """Converts the class-per-folder tree at root (or the Kaggle dataset) to array_record."""
    from bird_jax.data.folder_builder import check_name, folder_builder

    check_name(name)
    builder = _prepared(name, data_dir)
    if builder:
        _report_prepared(builder, "prepared already")
        return 0
    builder = folder_builder(name, kaggle.resolve_root(root, kaggle_handle), data_dir)
    builder.download_and_prepare()
    _report_prepared(builder, "prepared")
    return 0


def define_flags() -> None:
    """This command's flags (defined by cli.run, never on import)."""
    flags.DEFINE_enum("dataset", None, DATASETS, "Dataset to prepare.", required=True)
    flags.DEFINE_string("data_dir", None, "TFDS data_dir (default ~/tensorflow_datasets).")
    flags.DEFINE_string(
        "manual_dir",
        None,
        "Folder with files downloaded by hand (default DATA_DIR/downloads/manual).",
    )
    flags.DEFINE_string("root", "", "--dataset=folder: root/{train,valid,test}/<CLASS>/*.jpg.")
    flags.DEFINE_string("name", None, "--dataset=folder: the new dataset's snake_case name.")
    flags.DEFINE_string(
        "kaggle_handle",
        "",
        f"--dataset=folder without --root: fetch it, e.g. {kaggle.BIRDS_HANDLE}.",
    )


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    args = flags.FLAGS
    if args.dataset == "folder":
        return prepare_folder(args.root, args.name, args.data_dir, args.kaggle_handle)
    return prepare_tfds(args.dataset, args.data_dir, args.manual_dir)


if __name__ == "__main__":
    cli.run(main, define_flags)
