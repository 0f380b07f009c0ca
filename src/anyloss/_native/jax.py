"""JAX: every call runs one compiled computation, cached per static arguments.

``jax.jit`` of :func:`anyloss._formulas.evaluate` with the loss's name, its
parameters, the reduction and the dtypes fixed: an eager call is one cached
XLA executable (no tracing, no compilation after the first call with those
shapes), and under an outer ``jax.jit``, ``grad`` or ``vmap`` the same
function is inlined into the caller's trace.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from .._formulas import evaluate


@functools.lru_cache(maxsize=512)
def compiled(
    name: str, params: tuple[Any, ...], reduction: str, out_dtype: Any, dtype: Any, weighted: bool
) -> Any:
    """The jitted computation of one loss configuration (bounded cache)."""
    return jax.jit(functools.partial(evaluate, jnp, name, params, reduction, out_dtype, dtype, weighted))


def run(xp, name, params, reduction, out_dtype, dtype, weighted, *arrays):
    return compiled(name, params, reduction, out_dtype, dtype, weighted)(*arrays)
