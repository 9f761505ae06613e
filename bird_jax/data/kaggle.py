"""Kaggle datasets: the BIRDS 525 birds.csv listing, and fetching a dataset with kagglehub.

kagglehub is optional and imported only to fetch. Nothing touches the network unless Kaggle
credentials exist and www.kaggle.com answers; otherwise the error says what to download by hand.
"""

from __future__ import annotations

import csv
import os

from absl import logging

from bird_jax.data import net

BIRDS_CSV = "birds.csv"
BIRDS_HANDLE = "gpiosenka/100-bird-species"
KAGGLE_URL = "https://www.kaggle.com"
_CLASS_ID_COLUMNS = ("class id", "class index")  # The name changed between dataset versions.
_REQUIRED_COLUMNS = ("filepaths", "labels", "data set")

Files = dict[str, tuple[list[str], list[int]]]  # split -> (paths, labels)


def read_birds_csv(root: str) -> tuple[list[str], Files]:
    """Class names (in class-id order) and each split's (paths, labels) from root/birds.csv.

    Columns: 'class id' (or 'class index'; without it classes sort by name), 'filepaths'
    (relative to root), 'labels' (the class name) and 'data set' (the split).
    """
    path = os.path.join(root, BIRDS_CSV)
    with open(path, newline="", encoding="utf-8") as file:
        rows = [
            {key.strip().lower(): (value or "").strip() for key, value in row.items() if key}
            for row in csv.DictReader(file)
        ]
    if not rows:
        raise ValueError(f"{path} lists no images.")
    missing = [column for column in _REQUIRED_COLUMNS if column not in rows[0]]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; it has {sorted(rows[0])}.")
    id_column = next((column for column in _CLASS_ID_COLUMNS if column in rows[0]), None)
    class_ids: dict[str, int] = {}
    for row in rows:
        class_id = int(float(row[id_column])) if id_column else 0
        if class_ids.setdefault(row["labels"], class_id) != class_id:
            raise ValueError(
                f"{path}: class {row['labels']!r} has two class ids, "
                f"{class_ids[row['labels']]} and {class_id}."
            )
    class_names = sorted(class_ids, key=lambda name: (class_ids[name], name))
    label_of = {name: label for label, name in enumerate(class_names)}
    files: Files = {}
    for row in rows:
        paths, labels = files.setdefault(row["data set"], ([], []))
        paths.append(os.path.join(root, *row["filepaths"].replace("\\", "/").split("/")))
        labels.append(label_of[row["labels"]])
    return class_names, files


def _credential_files() -> list[str]:
    """Where the Kaggle CLI and kagglehub look for kaggle.json, in their order."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    folders = [
        os.environ.get("KAGGLE_CONFIG_DIR"),
        os.path.expanduser("~/.kaggle"),
        os.path.join(config_home, "kaggle"),
    ]
    return [os.path.join(folder, "kaggle.json") for folder in folders if folder]


def _has_env_credentials() -> bool:
    env = os.environ
    return bool(
        env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"))
    )


def _credentials_file() -> str | None:
    return next((path for path in _credential_files() if os.path.isfile(path)), None)


def _manual_instructions(handle: str) -> str:
    return (
        f"Download {KAGGLE_URL}/datasets/{handle} by hand (the 'Download' button, then unzip), "
        f"and set config.data.root to the folder holding its splits "
        f"(e.g. --config.data.root=/data/birds525). A copy kagglehub fetched before is under "
        f"~/.cache/kagglehub/datasets/{handle}/versions/<N>."
    )


def _dataset_root(path: str) -> str:
    """The download folder, or the first subfolder of it, holding birds.csv or a train/ folder."""
    candidates = [path] + sorted(entry.path for entry in os.scandir(path) if entry.is_dir())
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, BIRDS_CSV)) or os.path.isdir(
            os.path.join(candidate, "train")
        ):
            return candidate
    return path


def fetch(handle: str) -> str:
    """Downloads Kaggle dataset `handle` with kagglehub (cached there) and returns its root.

    FileNotFoundError with instructions when there are no Kaggle credentials, no kagglehub,
    or no network.
    """
    problem = None
    if not (_has_env_credentials() or _credentials_file()):
        problem = (
            "there are no Kaggle credentials (set KAGGLE_USERNAME and KAGGLE_KEY, or put "
            "kaggle.json from kaggle.com/settings into ~/.kaggle/ or ~/.config/kaggle/)"
        )
    else:
        try:
            import kagglehub
        except ImportError:
            problem = "kagglehub is not installed (pip install kagglehub)"
        else:
            if not net.host_reachable(KAGGLE_URL):
                problem = f"{KAGGLE_URL} cannot be reached from this machine"
    if problem:
        raise FileNotFoundError(
            f"Kaggle dataset {handle!r} cannot be fetched: {problem}. "
            + _manual_instructions(handle)
        )
    if not _has_env_credentials():  # kagglehub itself reads only $KAGGLE_CONFIG_DIR or ~/.kaggle.
        os.environ.setdefault("KAGGLE_CONFIG_DIR", os.path.dirname(_credentials_file()))
    root = _dataset_root(kagglehub.dataset_download(handle))
    logging.info("Kaggle dataset %s is in %s; set data.root to it to skip kagglehub.", handle, root)
    return root


def resolve_root(root: str, handle: str) -> str:
    """`root` when set, else the Kaggle dataset `handle` fetched with kagglehub."""
    if root:
        return root
    if not handle:
        raise ValueError(
            "config.data.root is empty: set it to a folder root/{train,valid,test}/<CLASS>/*.jpg, "
            f"or set config.data.kaggle_handle (e.g. {BIRDS_HANDLE!r}) to fetch one with kagglehub."
        )
    return fetch(handle)
