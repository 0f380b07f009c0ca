"""MLX: every call runs one compiled graph, cached per static arguments.

``mx.compile`` of :func:`anyloss._formulas.evaluate` with the loss's name, its
parameters, the reduction and the dtypes fixed; MLX traces it once per input
shapes and dtypes and reuses the fused graph, and ``mx.grad``,
``mx.value_and_grad`` and ``mx.vmap`` transform the compiled function.
"""

from __future__ import annotations

import functools
from typing import Any

import mlx.core as mx

from .._formulas import evaluate


@functools.lru_cache(maxsize=512)
def compiled(
    name: str, params: tuple[Any, ...], reduction: str, out_dtype: Any, dtype: Any, weighted: bool
) -> Any:
    """The compiled computation of one loss configuration (bounded cache)."""
    return mx.compile(functools.partial(evaluate, mx, name, params, reduction, out_dtype, dtype, weighted))


def run(xp, name, params, reduction, out_dtype, dtype, weighted, *arrays):
    return compiled(name, params, reduction, out_dtype, dtype, weighted)(*arrays)
