"""bird_jax: efficient image classification in JAX/Flax."""

import sys

if sys.version_info < (3, 11):  # noqa: UP036 -- exactly the old Pythons this is for
    raise ImportError(f"bird_jax needs Python >= 3.11, not {sys.version.split()[0]}.")

__version__ = "0.1.0"
