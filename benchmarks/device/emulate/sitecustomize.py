"""Imitates the GPU machine's Python here: hides every installed distribution it lacks.

`run.py --emulate_image` puts this folder on PYTHONPATH, so every Python the check starts loads
it. Distributions allowed: those in ../image_packages.txt (the device image) and the wheels in
the repository's .whl/ (what travels); an import of anything else fails as it would there. It
checks the list of wheels; it cannot check versions, which here are the venv's.
"""

import importlib.abc
import importlib.metadata
import re
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parents[2]
_OWN = {"bird_jax", "tests", "configs", "machine"}  # the repository's own modules


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _allowed() -> set[str]:
    lines = (_HERE.parent / "image_packages.txt").read_text().splitlines()
    names = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    names |= {wheel.name.split("-")[0] for wheel in (_ROOT / ".whl").glob("*.whl")}
    return {_normal(name) for name in names}


def _owners() -> dict[str, set[str]]:
    """Module prefix (top level, and second level for namespace packages) -> distributions."""
    owners: dict[str, set[str]] = {}
    for dist in importlib.metadata.distributions():
        name = _normal(dist.metadata["Name"] or "")
        for parts in (f.parts for f in dist.files or ()):
            if parts[0].endswith((".dist-info", ".data")) or parts[0] in ("..", "bin"):
                continue
            modules = [parts[0].removesuffix(".py")]
            if len(parts) > 1:
                modules.append(f"{parts[0]}.{parts[1].removesuffix('.py')}")
            for module in modules:
                owners.setdefault(module, set()).add(name)
    return owners


class _HideMissing(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.allowed, self.owners = _allowed(), _owners()

    def find_spec(self, fullname, path=None, target=None):
        parts = fullname.split(".")
        if parts[0] in _OWN:  # travels with the tree, whatever build metadata lies about here
            return None
        for module in (parts[0], ".".join(parts[:2])):
            dists = self.owners.get(module)
            if not dists or dists & self.allowed:
                continue
            raise ModuleNotFoundError(
                f"No module named {module!r} on the device image (emulated; from "
                f"{', '.join(sorted(dists))}: add it to benchmarks/device/fetch_wheels.sh)",
                name=module,
            )
        return None


sys.meta_path.insert(0, _HideMissing())
