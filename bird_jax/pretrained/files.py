"""Reads weight files into {name: numpy array} without executing anything from them.

- `.safetensors`: the JSON header and raw little-endian buffers, parsed here.
- `.npz`: numpy's archive, with pickled objects refused.
- `.pth` / `.pt` / `.bin` / `.ckpt`: PyTorch's zip format (torch >= 1.6) and its legacy format,
  through a restricted unpickler that admits only what a state dict is made of (tensor rebuilds,
  storages, OrderedDict, plain Python values) and refuses every other global, so a malicious
  pickle cannot run code. Torch is not needed.

A training checkpoint that wraps the state dict (`{"state_dict": ...}`, `{"model": ...}`) is
unwrapped; nested dicts of tensors are flattened with dots.
"""

import json
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

State = dict[str, np.ndarray]

SUFFIXES = (".safetensors", ".npz", ".pth", ".pt", ".bin", ".ckpt")
# Keys under which training scripts store the model's state dict beside other things.
_WRAPPERS = ("state_dict", "model", "model_state", "model_state_dict", "module", "params", "ema")

_TORCH_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}  # fmt: skip
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class WeightsFileError(ValueError):
    """A weights file that cannot be read: missing, truncated, not a checkpoint, or unsafe."""


def read_state(path: str | os.PathLike) -> State:
    """{tensor name: array} from a weights file; raises WeightsFileError with one line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsFileError(f"No weights file at {path}.")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise WeightsFileError(f"{path}: unknown weights suffix {suffix!r}; use one of {SUFFIXES}.")
    try:
        if suffix == ".safetensors":
            raw = _read_safetensors(path)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                raw = {key: archive[key] for key in archive.files}
        else:
            raw = _read_torch(path)
    except WeightsFileError as error:
        raise WeightsFileError(f"{path}: {error}") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError, struct.error,
            zipfile.BadZipFile, pickle.UnpicklingError) as error:  # fmt: skip
        raise WeightsFileError(
            f"{path} is truncated or not a {suffix} weights file ({type(error).__name__}: "
            f"{str(error)[:120]})."
        ) from None
    state = _flatten(_unwrap(raw))
    if not state:
        raise WeightsFileError(f"{path} holds no tensors.")
    return state


# ---------------------------------------------------------------------------------- safetensors


def _read_safetensors(path: str) -> State:
    with open(path, "rb") as f:
        (header_size,) = struct.unpack("<Q", f.read(8))
        if header_size > os.path.getsize(path) - 8:
            raise WeightsFileError("truncated safetensors header")
        header = json.loads(f.read(header_size))
        data = f.read()
    state = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in _SAFETENSORS_DTYPES:
            raise WeightsFileError(f"tensor {name} has unsupported dtype {entry['dtype']}")
        begin, end = entry["data_offsets"]
        if end > len(data):
            raise WeightsFileError(f"truncated: tensor {name} ends past the end of the file")
        array = np.frombuffer(data[begin:end], dtype=_SAFETENSORS_DTYPES[entry["dtype"]])
        state[name] = array.reshape(entry["shape"])
    return state


# ---------------------------------------------------------------------------------- torch


def _rebuild_tensor(storage, offset, size, stride, *_unused) -> np.ndarray:
    """torch._utils._rebuild_tensor_v2 on a numpy storage: a strided view, copied."""
    if isinstance(storage, _LazyStorage):
        return _LazyTensor(storage, (offset, size, stride))
    if not size:
        return np.array(storage[offset])
    itemsize = storage.itemsize
    end = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
    if end > storage.size:
        raise WeightsFileError("a tensor reaches past its storage (truncated file?)")
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view)


def _rebuild_parameter(data, *_unused) -> np.ndarray:
    """torch._utils._rebuild_parameter: a Parameter is its data."""
    return data


class _StorageType:
    """Stands in for torch.FloatStorage etc.: only its numpy dtype is used."""

    def __init__(self, name: str):
        self.dtype = np.dtype(_TORCH_STORAGE_DTYPES[name])


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _TORCH_STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a state dict; any global outside `_ALLOWED_GLOBALS` is refused, not imported."""

    def __init__(self, file: BinaryIO, load_storage):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise WeightsFileError(
                f"it contains {module}.{name}, which is not part of a tensor state dict; "
                "refusing to unpickle it (it could run code)"
            )
        return _ALLOWED_GLOBALS[(module, name)]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise WeightsFileError(f"unexpected persistent id {str(pid)[:60]}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise WeightsFileError(f"unsupported storage type {storage_type!r}")
        if len(pid) > 5 and pid[5] is not None:  # legacy view of a shared storage
            raise WeightsFileError("storage views of the pre-1.6 format are not supported")
        return self._load_storage(key, storage_type.dtype)


def _read_torch(path: str) -> Any:
    if zipfile.is_zipfile(path):
        return _read_torch_zip(path)
    return _read_torch_legacy(path)


def _read_torch_zip(path: str) -> Any:
    """torch.save's zip format: <root>/data.pkl plus one <root>/data/<key> file per storage."""
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise WeightsFileError("a zip file, but not a PyTorch checkpoint (no data.pkl)")
        root = pickles[0][: -len("data.pkl")]

        def load_storage(key: str, dtype: np.dtype) -> np.ndarray:
            return np.frombuffer(archive.read(f"{root}data/{key}"), dtype=dtype)

        with archive.open(pickles[0]) as f:
            return _RestrictedUnpickler(f, load_storage).load()


def _read_torch_legacy(path: str) -> Any:
    """torch.save's format before 1.6: magic, protocol, system info, the state pickle, the
    storage keys, then each storage as an int64 element count and its raw bytes."""
    with open(path, "rb") as f:
        magic = _RestrictedUnpickler(f, None).load()
        if magic != _LEGACY_MAGIC:
            raise WeightsFileError("not a PyTorch checkpoint (no zip archive, no legacy magic)")
        _RestrictedUnpickler(f, None).load()  # protocol version
        _RestrictedUnpickler(f, None).load()  # system info
        dtypes: dict[str, np.dtype] = {}
        storages: dict[str, np.ndarray] = {}

        def load_storage(key: str, dtype: np.dtype) -> _LazyStorage:
            dtypes[key] = dtype
            return _LazyStorage(storages, key)

        state = _RestrictedUnpickler(f, load_storage).load()
        for key in _RestrictedUnpickler(f, None).load():
            (count,) = struct.unpack("<q", f.read(8))
            nbytes = count * dtypes[key].itemsize
            buffer = f.read(nbytes)
            if len(buffer) != nbytes:
                raise WeightsFileError("truncated: a storage ends past the end of the file")
            storages[key] = np.frombuffer(buffer, dtype=dtypes[key])
    return _resolve(state)


class _LazyStorage:
    """A legacy-format storage whose bytes come after the pickle that references it."""

    def __init__(self, storages: dict[str, np.ndarray], key: str):
        self.storages, self.key = storages, key


class _LazyTensor:
    """A tensor view recorded while unpickling, built once its storage has been read."""

    def __init__(self, storage: _LazyStorage, args: tuple):
        self.storage, self.args = storage, args

    def build(self) -> np.ndarray:
        return _rebuild_tensor(self.storage.storages[self.storage.key], *self.args)


def _resolve(value: Any) -> Any:
    if isinstance(value, _LazyTensor):
        return value.build()
    if isinstance(value, dict):
        return {key: _resolve(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_resolve(item) for item in value)
    return value


# ---------------------------------------------------------------------------------- structure


def _unwrap(raw: Any) -> Any:
    """The state dict inside a training checkpoint that holds more than the model."""
    if not isinstance(raw, dict):
        raise WeightsFileError(f"holds a {type(raw).__name__}, not a dict of tensors")
    if any(isinstance(value, np.ndarray) for value in raw.values()):
        return raw
    for key in _WRAPPERS:
        if isinstance(raw.get(key), dict):
            return _unwrap(raw[key])
    return raw


def _flatten(tree: dict, prefix: str = "") -> State:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, np.ndarray):
            flat[name] = value
    return flat
