"""Fast paths: one module per library, under one contract.

A front door checks its arguments, works out the dtypes and hands the call
to :func:`call`: the loss's name, its static parameters, the reduction, the
output and compute dtypes, and its arrays (per-example weights last when
``weighted``).  With no fast path the portable computation,
``_formulas.evaluate``, runs.  A library module's ``run`` takes the same
arguments and returns the same values (within the accuracy contract listed in
the differences page): it delegates to the library's own kernel where that
kernel's values meet the contract, or runs ``evaluate`` compiled and cached
(JAX, MLX); it never holds a copy of a formula.  Fast paths read no array
values except on the host, outside any trace.

``portable()`` switches every fast path off inside a ``with`` block (the
tests compare both paths this way); ``ANYLOSS_PORTABLE=1`` in the
environment switches them off for the process.  The switch is a counter
under a lock, so threads may enter and leave it in any order; it is
process-wide, and a plain module attribute that ``torch.compile`` can read.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from typing import Any, Iterator

from .._common import _torch_compiling, astype
from .._formulas import evaluate

_ENV_PORTABLE: bool = os.environ.get("ANYLOSS_PORTABLE", "") not in ("", "0")
_depth: int = 1 if _ENV_PORTABLE else 0
_lock = threading.Lock()

# The types of parameters other than an array (a traced or lazy hyperparameter).
_PLAIN = (int, float, str, tuple, type(None))
_PLAIN_TYPES = frozenset((*_PLAIN, bool))  # looked up first: cheaper than isinstance

# namespace -> the module with that library's fast paths (None: no module)
_MODULES: dict[Any, Any] = {}
_LIBRARIES = {
    "numpy": "numpy",
    "array_api_compat.numpy": "numpy",
    "torch": "torch",
    "array_api_compat.torch": "torch",
    "jax.numpy": "jax",
    "mlx.core": "mlx",
}


@contextlib.contextmanager
def portable() -> Iterator[None]:
    """Run the portable reference code only, inside the ``with`` block."""
    global _depth
    with _lock:
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1


def enabled() -> bool:
    """Whether fast paths are in use now."""
    return _depth == 0


def module(xp: Any) -> Any:
    """The fast-path module for namespace ``xp``, or ``None``."""
    try:
        return _MODULES[xp]
    except KeyError:
        pass
    if _torch_compiling():
        return None  # no import while torch.compile traces; the portable code runs
    library = _LIBRARIES.get(getattr(xp, "__name__", ""))
    found = importlib.import_module(f"{__name__}.{library}") if library else None
    _MODULES[xp] = found
    return found


def _plain(params: tuple[Any, ...]) -> bool:
    """Whether no parameter is an array (a loop: half the cost of ``all`` of a generator)."""
    for p in params:
        if type(p) not in _PLAIN_TYPES and not isinstance(p, _PLAIN):
            return False
    return True


def call(
    xp: Any,
    name: str,
    params: tuple[Any, ...],
    reduction: str,
    out_dtype: Any,
    dtype: Any,
    weighted: bool,
    *arrays: Any,
) -> Any:
    """The loss ``name`` of ``arrays``: by the library's fast path, or portably."""
    if _depth == 0 and _plain(params):  # an array parameter runs portably
        fast = module(xp)
        if fast is not None:
            return fast.run(xp, name, params, reduction, out_dtype, dtype, weighted, *arrays)
    else:
        params = tuple(p if isinstance(p, _PLAIN) else astype(xp, p, dtype) for p in params)
    return evaluate(xp, name, params, reduction, out_dtype, dtype, weighted, *arrays)


def checks_class_indices(xp: Any, targets: Any, func: str | None = None) -> bool:
    """Whether the fast path for ``targets`` checks the class-index range itself
    (with the same clear error), so the front door need not read the values:
    for cross_entropy and nll_loss, or for loss ``func`` where the module's
    ``INDEX_CHECKED`` names it."""
    if _depth:
        return False
    fast = module(xp)
    if fast is None or func is not None and func not in getattr(fast, "INDEX_CHECKED", ()):
        return False
    return fast.checks_class_indices(targets)
