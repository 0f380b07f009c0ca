"""Optional fast paths, one module per library.

The portable code in ``classification``, ``regression`` and ``embedding`` is
the reference.  After a loss has checked its arguments and worked out its
dtypes, it asks :func:`dispatch` whether the library of its arrays has a fast
path for the call; a fast path computes the same algorithm (the same
accuracy safeguards) in fewer or native operations, or returns
``NotImplemented`` to let the portable code run.  Fast paths never read
array values, so they trace under ``jax.jit``, ``mx.compile`` and
``torch.compile`` like the portable code.

``portable()`` switches every fast path off inside a ``with`` block (the
tests compare both paths this way); setting the environment variable
``ANYLOSS_PORTABLE=1`` switches them off for the whole process.  The switch
is a plain module attribute rather than a context variable so that
``torch.compile`` can read it while tracing; it is process-wide, not
per-thread.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from typing import Any, Iterator

# Whether fast paths run.  Read on every call, so a plain attribute.
_enabled: bool = os.environ.get("ANYLOSS_PORTABLE", "") in ("", "0")

# namespace object -> the module with that library's fast paths (or None)
_MODULES: dict[int, Any] = {}


@contextlib.contextmanager
def portable() -> Iterator[None]:
    """Run the portable reference code only, inside the ``with`` block."""
    global _enabled
    before = _enabled
    _enabled = False
    try:
        yield
    finally:
        _enabled = before


def enabled() -> bool:
    """Whether fast paths are in use here."""
    return _enabled


def _library(xp: Any) -> str | None:
    name = getattr(xp, "__name__", "")
    if name in ("numpy", "array_api_compat.numpy"):
        return "numpy"
    if name in ("torch", "array_api_compat.torch"):
        return "torch"
    if name.startswith("jax"):
        return "jax"
    if name.startswith("mlx"):
        return "mlx"
    return None


def _module(xp: Any) -> Any:
    key = id(xp)
    try:
        return _MODULES[key]
    except KeyError:
        pass
    library = _library(xp)
    module = None
    if library is not None:
        module = importlib.import_module(f"{__name__}.{library}")
    _MODULES[key] = module
    return module


def dispatch(xp: Any, loss: str, *args: Any) -> Any:
    """The fast path's result for ``loss`` on ``xp``'s arrays, or ``NotImplemented``.

    ``args`` are the loss's checked arguments, as the portable code uses them
    (see each library module for the signature per loss).
    """
    if not _enabled:
        return NotImplemented
    library = _library(xp)
    if library == "torch":
        import torch

        if torch.compiler.is_compiling():
            return NotImplemented  # torch.compile fuses the portable code
    module = _module(xp)
    if module is None:
        return NotImplemented
    fast = getattr(module, loss, None)
    if fast is None:
        return NotImplemented
    return fast(xp, *args)
