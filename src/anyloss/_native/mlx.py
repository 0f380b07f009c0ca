"""MLX: every eager call runs one compiled graph, cached per static arguments.

``mx.compile`` of :func:`anyloss._formulas.evaluate` with the loss's name, its
parameters, the reduction and the dtypes fixed.  MLX traces it once per input
shapes and dtypes and replays the fused graph; a repeated call traces nothing.
Under ``mx.grad``, ``mx.vjp``, ``mx.jvp``, ``mx.vmap`` or an enclosing
``mx.compile`` the inputs are tracers and MLX runs the function itself, so
the portable ops are what the transformation sees.

The namespace the formulas run on is MLX's with two primitives in cheaper
forms of equal value (``_formulas.exp_by_pow2``, ``_formulas.isfinite_by_subtraction``).

Each configuration keeps its traces (one per input signature) until it has
seen ``MAX_SIGNATURES`` of them; then its compiled function is replaced, which
frees them, so a stream of new shapes cannot grow memory without bound.  At
most ``MAX_CONFIGURATIONS`` configurations are kept, the least recently used
dropped first.
"""

from __future__ import annotations

import functools
import types
from collections import OrderedDict
from typing import Any

import mlx.core as mx

from .. import _formulas

# Input signatures one compiled configuration traces before it starts afresh.
MAX_SIGNATURES = 64
# Configurations (loss, parameters, reduction, dtypes) kept compiled.
MAX_CONFIGURATIONS = 128
# Arrays at least this large take exp as a power of two: below it the extra
# primitive costs more than it saves when the function runs uncompiled
# (under mx.grad), and next to nothing either way.
EXP_BY_POW2_MIN_SIZE = 1024


def _exp(x: Any) -> Any:
    return _formulas.exp_by_pow2(mx, x) if x.size >= EXP_BY_POW2_MIN_SIZE else mx.exp(x)


def _isfinite(x: Any) -> Any:
    return _formulas.isfinite_by_subtraction(mx, x)


def _namespace() -> Any:
    """``mlx.core`` with ``exp`` and ``isfinite`` in their cheaper forms."""
    ns = types.ModuleType(mx.__name__)
    ns.__dict__.update((k, v) for k, v in vars(mx).items() if not k.startswith("__"))
    ns.exp = _exp
    ns.isfinite = _isfinite
    return ns


NAMESPACE = _namespace()


def _body(state: Any) -> Any:
    """The traced function of one configuration; it counts its runs and the
    input signatures it has seen in ``state``."""

    def body(*arrays: Any) -> Any:
        state.traces += 1
        state.signatures.add(tuple((a.shape, a.dtype) for a in arrays))
        return evaluate(NAMESPACE, *state.static, *arrays)

    return body


class Compiled:
    """One configuration of one loss, compiled; it starts afresh once it has
    traced ``MAX_SIGNATURES`` input signatures."""

    __slots__ = ("function", "state")

    def __init__(self, static: tuple[Any, ...]) -> None:
        # The traced function holds the state, not this object: no reference
        # cycle, so a dropped configuration frees its traces at once.
        self.state = types.SimpleNamespace(static=static, signatures=set(), traces=0)
        self.function = mx.compile(_body(self.state))

    def __call__(self, *arrays: Any) -> Any:
        out = self.function(*arrays)
        if len(self.state.signatures) > MAX_SIGNATURES:
            # A new function object; MLX frees the old one's traces with it.
            self.state.signatures = set()
            self.function = mx.compile(_body(self.state))
        return out


# The portable computation, looked up at trace time (tests count the traces).
evaluate = _formulas.evaluate

_CACHE: OrderedDict[tuple[Any, ...], Compiled] = OrderedDict()


def compiled(
    name: str, params: tuple[Any, ...], reduction: str, out_dtype: Any, dtype: Any, weighted: bool
) -> Compiled:
    """The compiled computation of one loss configuration (bounded cache)."""
    key = (name, params, reduction, out_dtype, dtype, weighted)
    try:
        found = _CACHE[key]
    except KeyError:
        found = _CACHE[key] = Compiled(key)
        if len(_CACHE) > MAX_CONFIGURATIONS:
            _CACHE.popitem(last=False)
        return found
    _CACHE.move_to_end(key)
    return found


def run(
    xp: Any,
    name: str,
    params: tuple[Any, ...],
    reduction: str,
    out_dtype: Any,
    dtype: Any,
    weighted: bool,
    *arrays: Any,
) -> Any:
    for a in arrays:
        if a is None:  # an optional array left out: mx.compile takes arrays only
            return evaluate(NAMESPACE, name, params, reduction, out_dtype, dtype, weighted, *arrays)
    return compiled(name, params, reduction, out_dtype, dtype, weighted)(*arrays)
